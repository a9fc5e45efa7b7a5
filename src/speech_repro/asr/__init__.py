"""Speech recognition building blocks: text, features, augmentation, the CTC model, decoding."""
