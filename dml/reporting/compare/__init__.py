"""`dml compare`: read the runs of a sweep, rank them, and write a table and a plot."""
