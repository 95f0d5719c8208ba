"""What a failed job tells its user: the media they sent and what was wrong, never a server path."""

from .live import upload, wait_for


def test_bad_media_errors_name_the_media_url_not_server_paths(server, api):
    corrupt = upload(api, b"this is not audio at all\n" * 100, "errors/corrupt.wav")
    empty = upload(api, b"", "errors/empty.wav")
    expected = {
        corrupt: "it is not audio that can be decoded (corrupt or unsupported format, or no audio track)",
        empty: "the file is empty (0 bytes)",
    }
    for url, reason in expected.items():
        job = wait_for(api, api.post("/v1/diarize", json={"url": url}).json()["jobId"])
        assert job["status"] == "failed"
        assert job["output"]["error"] == f"Could not load audio from {url}: {reason}."
    # The operator still gets the detail, with the file's place on disk: the upload itself, or the
    # copy a worker on another machine fetched from the replica that holds it.
    assert f"{server.jobs_data_dir}/{'downloads' if server.fleet else 'media'}/" in server.jobs_log()
