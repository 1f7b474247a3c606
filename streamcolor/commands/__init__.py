"""One module per ``streamcolor`` verb; each defines ``command``."""
