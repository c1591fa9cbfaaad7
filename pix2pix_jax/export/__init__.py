"""Export: the pix2pix-export command, the .p2p format and the TensorFlow SavedModel."""
