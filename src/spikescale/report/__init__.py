"""Run reports: analyses saved into run directories, plots and Markdown reports built from them."""
