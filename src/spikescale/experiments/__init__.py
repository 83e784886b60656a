"""Experiments: recipes, run directories and the demo."""
