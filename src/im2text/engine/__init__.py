"""Execution machinery shared by all tasks: device/dtype choice and prefetching batch runner."""
