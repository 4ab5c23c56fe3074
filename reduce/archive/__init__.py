"""Reprocessing a calibration archive: finding raw frames and grouping them."""
