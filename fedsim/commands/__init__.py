"""One module per `fedsim` sub-command: NAME, HELP, READS_DATA, add_arguments(parser), main(args)."""
