r"""LLVM vector code for the sparse-tap delay kernels, emitted through numba intrinsics.

Signals are packed ``[B/16, C, R, 16]`` (:mod:`spikescale.functional.delay_kernels`): a *row* is the 16
samples of one channel at one step, one vector of ``LANES`` elements. Every kernel here works on a tile
of ``ROWS`` consecutive rows held in registers. All arrays are flat (1-D) except ``offsets`` and
``values``, which are C-contiguous ``[C, E]`` and ``[C, E, W]``; positions are in elements.

``tile_window(src, base, offsets, values, taps, first, last, c, out, out_base, init)`` — the gather:

.. math:: \mathrm{out}[o_0 + 16k + l] \mathrel{(+)}= \sum_{e=\mathrm{first}}^{\mathrm{last}-1} \sum_{j<W}
          \mathrm{values}[c, e, j]\; \mathrm{src}[b + \mathrm{offsets}[c, e] + 16(k - j) + l],
          \quad k < 8,\ l < 16

(``=`` when ``init``). Tap j of an entry reads the window of tap j − 1 shifted one row back, so the
window slides through registers: one new row per tap, eight fused multiply-adds. With a ``uint16`` source
(spikes packed as bit masks ``[B/16, C, R]``, bit l = sample l of the group, one element per row) the
same tile adds the value to the lanes whose bit is set: a 2-byte load and a masked add per row instead
of a 64-byte load and a multiply-add, for inputs that are all 0 or 1 (spikes at inference).
``tile_single`` is the same for entries with exactly one tap, over ``SINGLE_TAP_ROWS`` rows.

``correlate(grad, grad_base, grad_stride, src, src_base, src_stride, groups, tiles, taps, out, out_base)``
— the dot products of one entry with its W taps, over ``groups`` sample groups and ``tiles`` tiles:

.. math:: \mathrm{out}[o_0 + j] = \sum_{n<\mathrm{groups}} \sum_{t < 8\,\mathrm{tiles}} \sum_l
          \mathrm{grad}[g_0 + n g_s + 16t + l]\; \mathrm{src}[s_0 + n s_s + 16(t - j) + l], \quad j < W \le 32

``transpose(src, src_base, src_stride, dst, dst_base, dst_stride)`` — a 16 × 16 block,
``dst[d_0 + i·d_s + j] = src[s_0 + j·s_s + i]``, by four stages of pairwise block swaps in registers.

Accumulators and windows are allocas indexed by constants, which LLVM promotes to registers; LLVM maps
the 16-element vectors to the host's vector width (one AVX-512 register of float32).

numba's on-disk cache of :mod:`spikescale.functional.delay_loops` does not see changes to this file: after
editing it, touch ``delay_loops.py`` (or clear its ``__pycache__``) so that the loops are compiled again.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .delay_kernels import LANES, MAX_CORRELATE_TAPS, ROWS, SINGLE_TAP_ROWS

__all__ = ["tile_window", "tile_single", "correlate", "transpose"]


i32 = ir.IntType(32)


def pointer(builder, data, position, vector, k=0):
    """``&data[position + k]`` as a pointer to a vector."""
    element = builder.gep(data, [builder.add(position, ir.Constant(position.type, k))])
    return builder.bitcast(element, vector.as_pointer())


def load(builder, data, position, vector, k=0):
    return builder.load(pointer(builder, data, position, vector, k), align=4)


def splat(builder, scalar, vector):
    single = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(i32, 0))
    zeros = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
    return builder.shuffle_vector(single, ir.Constant(vector, ir.Undefined), zeros)


def fma(builder, acc, a, b):
    return builder.fadd(acc, builder.fmul(a, b, flags=("fast",)), flags=("fast",))


def zero(vector):
    return ir.Constant(vector, [ir.Constant(vector.element, 0.0)] * LANES)


def for_taps(builder, taps, position, window, read, unit, body):
    """Call ``body(u, j)`` for taps ``j < taps`` with the window sliding one row back per tap.

    Row ``r`` of the window (the row ``unit·r`` elements after ``position``) lives in slot ``r mod 8``;
    the tap loop is unrolled by eight, so tap ``j`` finds row ``k − j`` in slot ``(k − u) mod 8`` with
    ``u = j mod 8``, and each slide is one ``read(position)`` into a constant slot (no register moves).
    """
    count = builder.udiv(builder.add(taps, ir.Constant(taps.type, ROWS - 1)), ir.Constant(taps.type, ROWS))
    with cgutils.for_range(builder, count) as group:
        for u in range(ROWS):
            j = builder.add(builder.mul(group.index, ir.Constant(taps.type, ROWS)), ir.Constant(taps.type, u))
            with builder.if_then(builder.icmp_signed("<", j, taps)):
                body(u, j)
                following = builder.add(j, ir.Constant(taps.type, 1))
                with builder.if_then(builder.icmp_signed("<", following, taps)):
                    back = builder.sub(position, builder.mul(following, ir.Constant(taps.type, unit)))
                    builder.store(read(back), window[(-u - 1) % ROWS])


def data_of(context, builder, array_type, value):
    return context.make_array(array_type)(context, builder, value)


def make_tile(rows, sliding):
    """The gather tile over ``rows`` rows: any number of taps with a sliding window (``rows`` = 8), or
    exactly one tap per entry in straight-line code (integer delays: more rows amortise each entry)."""

    @intrinsic
    def tile(typingctx, src, base, offsets, values, taps, first, last, channel, out, out_base, init):
        signature = types.void(src, base, offsets, values, taps, first, last, channel, out, out_base, init)
        binary = isinstance(src.dtype, types.Integer)  # rows of 16-bit spike masks instead of vectors

        def codegen(context, builder, sig, args):
            src_v, base_v, offsets_v, values_v, taps_v, first_v, last_v, channel_v, out_v, out_base_v, init_v = args
            vector = ir.VectorType(context.get_value_type(values.dtype), LANES)
            src_p = data_of(context, builder, src, src_v).data
            offsets_a = data_of(context, builder, offsets, offsets_v)
            values_p = data_of(context, builder, values, values_v).data
            out_p = data_of(context, builder, out, out_v).data
            unit = 1 if binary else LANES
            mask = ir.VectorType(ir.IntType(1), LANES)

            def read(position, k=0):
                if binary:
                    return builder.load(builder.gep(src_p, [builder.add(position, ir.Constant(position.type, k))]))
                return load(builder, src_p, position, vector, k * LANES)

            def add_row(acc, weight, row):
                if binary:  # acc + w where the sample spiked
                    return builder.select(builder.bitcast(row, mask), builder.fadd(acc, weight, flags=("fast",)),
                                          acc)
                return fma(builder, acc, weight, row)

            row = builder.mul(channel_v, builder.extract_value(offsets_a.shape, 1))
            sums = [cgutils.alloca_once(builder, vector) for _ in range(rows)]
            window = [cgutils.alloca_once(builder, ir.IntType(16) if binary else vector) for _ in range(ROWS)]
            with builder.if_else(cgutils.is_true(builder, init_v)) as (fresh, partial):
                with fresh:
                    for acc in sums:
                        builder.store(zero(vector), acc)
                with partial:
                    for k, acc in enumerate(sums):
                        builder.store(load(builder, out_p, out_base_v, vector, k * LANES), acc)
            one = ir.Constant(first_v.type, 1)
            with cgutils.for_range_slice(builder, first_v, last_v, one, inc=True) as (entry, _):
                at = builder.add(row, entry)
                position = builder.add(base_v, builder.load(builder.gep(offsets_a.data, [at])))
                tap_values = builder.gep(values_p, [builder.mul(at, taps_v)])
                def accumulate(u, j):
                    weight = splat(builder, builder.load(builder.gep(tap_values, [j])), vector)
                    for k, acc in enumerate(sums):
                        row = builder.load(window[(k - u) % ROWS]) if sliding else read(position, k)
                        builder.store(add_row(builder.load(acc), weight, row), acc)

                if sliding:
                    for k, slot in enumerate(window):
                        builder.store(read(position, k), slot)
                    for_taps(builder, taps_v, position, window, read, unit, accumulate)
                else:
                    accumulate(0, ir.Constant(taps_v.type, 0))
            for k, acc in enumerate(sums):
                builder.store(builder.load(acc), pointer(builder, out_p, out_base_v, vector, k * LANES), align=4)

        return signature, codegen

    return tile


@intrinsic
def correlate(typingctx, grad, grad_base, grad_stride, src, src_base, src_stride, groups, tiles, taps, out,
              out_base):
    signature = types.void(grad, grad_base, grad_stride, src, src_base, src_stride, groups, tiles, taps, out,
                           out_base)

    def codegen(context, builder, sig, args):
        (grad_v, grad_base_v, grad_stride_v, src_v, src_base_v, src_stride_v, groups_v, tiles_v, taps_v,
         out_v, out_base_v) = args
        scalar = context.get_value_type(src.dtype)
        vector = ir.VectorType(scalar, LANES)
        grad_p = data_of(context, builder, grad, grad_v).data
        src_p = data_of(context, builder, src, src_v).data
        out_p = data_of(context, builder, out, out_v).data
        sums = cgutils.alloca_once(builder, vector, size=MAX_CORRELATE_TAPS)
        few_sums = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
        gradient = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
        window = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
        name = f"llvm.vector.reduce.fadd.v{LANES}{'f32' if scalar == ir.FloatType() else 'f64'}"
        reduce = cgutils.get_or_insert_function(builder.module, ir.FunctionType(scalar, [scalar, vector]), name)

        def products(slot_of):
            """Add every tap's products over all groups and tiles into the vector at ``slot_of(u, j)``."""
            with cgutils.for_range(builder, groups_v) as group:
                grad_at = builder.add(grad_base_v, builder.mul(group.index, grad_stride_v))
                src_at = builder.add(src_base_v, builder.mul(group.index, src_stride_v))
                with cgutils.for_range(builder, tiles_v) as step:
                    shift = builder.mul(step.index, ir.Constant(step.index.type, ROWS * LANES))
                    g_position, s_position = builder.add(grad_at, shift), builder.add(src_at, shift)
                    for k in range(ROWS):
                        builder.store(load(builder, grad_p, g_position, vector, k * LANES), gradient[k])
                        builder.store(load(builder, src_p, s_position, vector, k * LANES), window[k])

                    def accumulate(u, j):
                        halves = [zero(vector), zero(vector)]  # two chains: half the latency
                        for k in range(ROWS):
                            row = builder.load(window[(k - u) % ROWS])
                            halves[k % 2] = fma(builder, halves[k % 2], builder.load(gradient[k]), row)
                        slot = slot_of(u, j)
                        total = builder.fadd(halves[0], halves[1], flags=("fast",))
                        builder.store(builder.fadd(builder.load(slot), total, flags=("fast",)), slot)

                    for_taps(builder, taps_v, s_position, window, lambda at: load(builder, src_p, at, vector),
                             LANES, accumulate)

        def write(slot, j):
            total = builder.call(reduce, [ir.Constant(scalar, 0.0), builder.load(slot)], fastmath=("fast",))
            builder.store(total, builder.gep(out_p, [builder.add(out_base_v, j)]))

        few = builder.icmp_signed("<=", taps_v, ir.Constant(taps_v.type, ROWS))
        with builder.if_else(few) as (in_registers, on_stack):
            with in_registers:  # at most eight taps: tap j = u has its own register
                for slot in few_sums:
                    builder.store(zero(vector), slot)
                products(lambda u, j: few_sums[u])
                for u, slot in enumerate(few_sums):
                    j = ir.Constant(taps_v.type, u)
                    with builder.if_then(builder.icmp_signed("<", j, taps_v)):
                        write(slot, j)
            with on_stack:
                with cgutils.for_range(builder, taps_v) as loop:
                    builder.store(zero(vector), builder.gep(sums, [loop.index]))
                products(lambda u, j: builder.gep(sums, [j]))
                with cgutils.for_range(builder, taps_v) as loop:
                    write(builder.gep(sums, [loop.index]), loop.index)

    return signature, codegen


@intrinsic
def transpose(typingctx, src, src_base, src_stride, dst, dst_base, dst_stride):
    signature = types.void(src, src_base, src_stride, dst, dst_base, dst_stride)

    def codegen(context, builder, sig, args):
        src_v, src_base_v, src_stride_v, dst_v, dst_base_v, dst_stride_v = args
        vector = ir.VectorType(context.get_value_type(src.dtype), LANES)
        src_p = data_of(context, builder, src, src_v).data
        dst_p = data_of(context, builder, dst, dst_v).data

        def start(base, stride, i):
            return builder.add(base, builder.mul(stride, ir.Constant(stride.type, i)))

        rows = [load(builder, src_p, start(src_base_v, src_stride_v, i), vector) for i in range(LANES)]
        size = LANES // 2
        while size:  # swap the off-diagonal size × size blocks of each pair of rows (i, i + size)
            low = [j if (j // size) % 2 == 0 else LANES + j - size for j in range(LANES)]
            high = [j + size if (j // size) % 2 == 0 else LANES + j for j in range(LANES)]
            masks = [ir.Constant(ir.VectorType(i32, LANES), m) for m in (low, high)]
            for i in range(LANES):
                if (i // size) % 2 == 0:
                    a, b = rows[i], rows[i + size]
                    rows[i], rows[i + size] = (builder.shuffle_vector(a, b, m) for m in masks)
            size //= 2
        for i, value in enumerate(rows):
            builder.store(value, pointer(builder, dst_p, start(dst_base_v, dst_stride_v, i), vector), align=4)

    return signature, codegen


tile_window = make_tile(ROWS, True)
tile_single = make_tile(SINGLE_TAP_ROWS, False)
