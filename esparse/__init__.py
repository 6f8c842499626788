"""esparse."""
