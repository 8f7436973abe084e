"""servicenet benchmarks: each runs our component and its peer side by side and prints ratios."""
