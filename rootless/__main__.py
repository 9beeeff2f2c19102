from rootless.cli.main import run

run()
