import sys

# A scheduled pass first asks the idle check, which imports nothing of the app:
# when nothing changed since the last full pass, the pass ends here.
if sys.argv[1:] in (["run"], ["run", "--once"]):
    from syft_bg_app.schedule.idle import try_idle_pass

    exit_code = try_idle_pass()
    if exit_code is not None:
        sys.exit(exit_code)

from syft_bg_app.cli.main import main  # noqa: E402

sys.exit(main())
