"""What each `dlcli` command does, as library functions the CLI calls (and a notebook can):
train.py, evaluate.py, predict.py, summarize.py, validate.py, listing.py (`list`), reports.py (`runs`,
`compare`) and plots.py (the figures evaluate and compare write)."""
