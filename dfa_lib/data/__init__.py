"""Audio in, clips out: decoding, manifests, datasets, protocols, codecs, augmentation and the offline corpus."""
