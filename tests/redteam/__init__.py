"""Red-team suite: hostile inputs that must end in one clear line (issue 17)."""
