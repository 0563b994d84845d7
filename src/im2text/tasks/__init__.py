"""Tasks: one file each. A task calls families only through the Family protocol."""
