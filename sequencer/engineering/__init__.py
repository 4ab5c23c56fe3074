"""Engineering verification, history, trends and simulator campaigns."""
