"""Image signatures in the sigstore format of cosign and containers/image."""
