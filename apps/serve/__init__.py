"""``hcm serve``: a local web app over a workspace (docs/serve.md).

- ``command``: the command's options and checks; loads the web stack only after them.
- ``settings``: what the server was started with (host, port, token, upload limit).
- ``security``: the access token, same-origin and host checks, files served only from the workspace.
- ``uploads``: an upload saved within the size limit, judged by decoding in a worker process (``probe``).
- ``pages``: what the runs, run, compare and studies pages show, read from the workspace.
- ``clips``: where a cached item's raw clip lies in the workspace.
- ``models``: the run models and predictors, loaded once and used on one worker thread.
- ``app``: the FastAPI application and its routes; ``templates/`` and ``static/`` its page files.
"""
