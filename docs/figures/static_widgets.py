"""For an offline rendering of an executed notebook: each widget output (tqdm's bar) becomes
static HTML drawn from the widget's saved final state, since the widget scripts come from a
CDN. How docs/figures/quickstart_notebook.png was made (nothing leaves the machine):

    python -c "import nbformat, nbclient; nb = nbformat.read('quickstart.ipynb', 4); \
        nbclient.NotebookClient(nb, timeout=600).execute(); nbformat.write(nb, 'run.ipynb')"
    python docs/figures/static_widgets.py run.ipynb static.ipynb
    jupyter nbconvert --to html static.ipynb   # then drop its https:// <script> tags
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run \
        --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1200,1300 \
        --screenshot=shot.png static.html
"""

import sys

import nbformat

nb = nbformat.read(sys.argv[1], 4)
state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def model(ref):
    return state[ref.removeprefix("IPY_MODEL_")]["state"]


def draw(model_id):
    box = state[model_id]["state"]
    label, bar, text = (model(c) for c in box["children"])
    pct = 100 * bar["value"] / bar["max"]
    color = {"success": "#4caf50", "danger": "#e53935"}.get(bar.get("bar_style"), "#2196f3")
    return (
        '<div style="display:flex;align-items:center;font-family:monospace;font-size:13px">'
        f'<span style="white-space:nowrap">{label["value"]}</span>'
        '<span style="display:inline-block;width:300px;height:16px;margin:0 6px;'
        f'background:#eee;border:1px solid #ccc"><span style="display:block;height:100%;'
        f'width:{pct:.0f}%;background:{color}"></span></span>'
        f"<span>{text['value']}</span></div>"
    )


for cell in nb.cells:
    for out in cell.get("outputs", []):
        view = out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
        if view:
            out["data"]["text/html"] = draw(view["model_id"])
del nb.metadata["widgets"]
nbformat.write(nb, sys.argv[2])
