"""crashcart: debugging tools inside a running minimal container, leaving no trace."""
