from syft_bg_app.session import open_view
from syft_bg_app.views import jobs as job_views


def test_a_submitted_job_is_received_as_pending(app):
    app.submit("hello")
    result = app.run_pass()
    assert result.exit_code == 0, result.summary
    assert app.job_state("hello")["status"] == "pending"
    ctx = open_view(app.home)
    assert [v.label for v in job_views.all_views(ctx)] == ["alice@uni.edu/hello"]
