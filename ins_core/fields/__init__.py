"""Fields: encodings, MLPs and the NeRF / SDF / image fields (the INS content module)."""
