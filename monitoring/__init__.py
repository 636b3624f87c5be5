"""Stack-wide monitoring: the alarm topic, the alarm helper every component uses, the dashboard."""
