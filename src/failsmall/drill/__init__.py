"""Drills: incident replays against a live local fleet (or a running one), with open-loop load,
a steady-state hypothesis checked continuously, rollbacks that always run, and a report.

`failsmall drill SCENARIO` runs one; `--profile hotwired` runs the same scenario on a fleet
assembled here with the defences switched off (see `failsmall.drill.hotwired`)."""
