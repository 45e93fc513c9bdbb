"""Synthetic source/target domains for the demo (``nnunet-rc make-synthetic``)."""
