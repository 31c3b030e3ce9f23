"""What both faces drive their policies with (driver.py)."""
