"""Dataset sources: each loads its data and returns train/val/test splits."""
