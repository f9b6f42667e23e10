"""What a run shows and leaves behind: metric files, console tables, plots, W&B runs,
and the comparison of many runs."""
