"""Model code for the screening portal: plain Python, NumPy and PyTorch, never Django."""
