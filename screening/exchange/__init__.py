"""The portal as a DICOM node: the C-STORE receiver (receiver.py)."""
