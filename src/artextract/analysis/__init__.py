"""What `evaluate` computes from predictions: metrics with intervals, calibration, outliers, explanations."""
