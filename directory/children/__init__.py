"""The embedded child-record module: the statutory data set about each child,
shielding, reasons for every access, anomaly alerts and retention."""
