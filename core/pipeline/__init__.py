"""The prediction pipeline: model, prior, windows, confidence, calibration, predict, train, evaluate."""
