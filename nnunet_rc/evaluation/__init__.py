"""Out-of-domain evaluation (``nnunet-rc evaluate`` / ``nnunet-rc benchmark``)."""
