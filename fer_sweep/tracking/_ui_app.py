"""MLflow's UI server with one more page: ``/fer-sweep/open``, what ``fer_sweep ui`` links to.

MLflow 3.17's UI decides between its GenAI pages (traces, an overview) and its model-training
pages (runs) by the browser's ``workflowType``: the link's ``?workflowType=`` where it has one,
else a preference in the browser's localStorage, GenAI unless the user switched. The
experiments list links each experiment without the parameter, so from a fresh browser
profile a click on a study opened its GenAI overview; the ``mlflow.experimentKind`` tag is not
consulted (its UI derives an experiment's kind from ``workflowType`` whenever the workflow
switch is enabled, which 3.17 hard-codes). And the runs table starts with MLflow's default
columns unless the link names a saved view, which the list's links do not.

So the page sets, in the browser that opens it, what a user would otherwise set by hand: the
model-training preference (the "Model training" switch), for each fer_sweep study this
browser has no table layout for yet the study's saved view as that layout, and the assistant
panel as already shown once (MLflow opens it over a third of the page on a first visit, over
the table's metric columns). Then it goes on to MLflow's experiments list, or to a study's
runs with its saved view. A layout the user changed (or MLflow saved on an earlier visit) is
left alone. The localStorage keys are MLflow 3.17's own (its UI code, not a documented API):
``tests/test_ui_browser.py`` opens the page in Chromium and fails when a later MLflow reads
them no more.

``mlflow ui --app-name fer-sweep`` serves it (the ``mlflow.app`` entry point in
pyproject.toml; MLflow's own ``basic-auth`` app plugs in the same way).
"""

from __future__ import annotations

import json
import re

from fer_sweep.tracking._ui import OPEN_PATH
from fer_sweep.tracking._views import SAVED_VIEW_ID, SAVED_VIEW_PREFIX, runs_url

# MLflow 3.17's localStorage: useLocalStorage's "<key>_v<version>" (JSON values) and
# LocalStorageUtils' per-component state of the experiment page, keyed by its experiment ids.
WORKFLOW_KEY = "mlflow.workflowType_v1"
MODEL_TRAINING = "machine_learning"
ASSISTANT_SHOWN_KEY = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"
LAYOUT_KEY = "MLflowLocalStorage-1.1-ExperimentPage-{ids}-ReactComponentState"
EXPERIMENTS_LIST = f"/#/experiments?workflowType={MODEL_TRAINING}"
_EXPERIMENT_ID = re.compile(r"[0-9]{1,19}")

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fer-sweep: opening MLflow</title></head>
<body><p>Opening <a id="go" href="">MLflow</a>...</p>
<script>
(async () => {
  const settings = %(settings)s;
  document.getElementById("go").href = settings.target;
  try {
    localStorage.setItem(settings.workflowKey, JSON.stringify(settings.workflow));
    if (localStorage.getItem(settings.assistantKey) === null) {
      localStorage.setItem(settings.assistantKey, "true");
    }
    const reply = await fetch("/ajax-api/2.0/mlflow/experiments/search", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({max_results: 1000}),
    });
    for (const exp of (await reply.json()).experiments || []) {
      const view = (exp.tags || []).find((t) => t.key === settings.viewTag);
      const key = settings.layoutKey.replace("{ids}", JSON.stringify([exp.experiment_id]));
      if (view && localStorage.getItem(key) === null) {
        localStorage.setItem(key, JSON.parse(view.value).state);
      }
    }
  } finally {
    location.replace(settings.target);
  }
})();
</script></body></html>
"""


def page(experiment: str | None) -> str:
    """The page's HTML: prepare this browser, then go to the experiments list or a study."""
    settings = {
        "target": EXPERIMENTS_LIST if experiment is None else runs_url("", experiment),
        "workflowKey": WORKFLOW_KEY,
        "workflow": MODEL_TRAINING,
        "assistantKey": ASSISTANT_SHOWN_KEY,
        "viewTag": SAVED_VIEW_PREFIX + SAVED_VIEW_ID,
        "layoutKey": LAYOUT_KEY,
    }
    # "</" would end the script early; JSON allows it escaped.
    return _PAGE % {"settings": json.dumps(settings).replace("</", "<\\/")}


def _open():
    from flask import Response, request

    experiment = request.args.get("experiment")
    if experiment is not None and not _EXPERIMENT_ID.fullmatch(experiment):
        return Response(
            f"not an experiment id: {experiment!r}\n", status=400, mimetype="text/plain"
        )
    return Response(page(experiment), mimetype="text/html", headers={"Cache-Control": "no-store"})


def create_app():
    """MLflow's server app with :data:`OPEN_PATH` added (an ``mlflow.app`` factory).

    Under uvicorn (``mlflow ui``'s default) the FastAPI app that wraps MLflow's Flask app, as
    MLflow's own ``basic-auth`` app returns; under gunicorn or waitress the Flask app.
    """
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    if "fer_sweep_open" not in flask_app.view_functions:  # once per process
        flask_app.add_url_rule(OPEN_PATH, "fer_sweep_open", _open, methods=["GET"])
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import app as fastapi_app

        return fastapi_app
    return flask_app
