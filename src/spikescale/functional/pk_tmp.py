import numpy as np
from numba import njit, prange
LANES = 16
@njit(parallel=True, fastmath=True, boundscheck=False, nogil=True, cache=True)
def pack_bits_b(x, before, out):
    steps, batch, channels = x.shape
    groups, _, rows = out.shape
    first, last = max(0, -before), min(steps, rows - before)
    others = 0
    for task in prange(groups * max(0, last - first)):
        n = task // (last - first)
        t = first + task - n * (last - first)
        masks = np.zeros(channels, np.int32)
        bad = np.zeros(channels, np.int32)
        for lane in range(min(LANES, batch - n * LANES)):
            values = x[t, n * LANES + lane]
            for c in range(channels):
                v = values[c]
                masks[c] |= np.int32(v != 0.0) << lane
                bad[c] |= np.int32((v != 0.0) & (v != 1.0))
        count = 0
        for c in range(channels):
            out[n, c, before + t] = masks[c]
            count += bad[c]
        others += count
    return others
