"""A page to try sam_convex: click on an image, see the raw and the convex mask, export.

    python -m sam_convex.serve [--host 127.0.0.1] [--port 8000] [--model grabcut|sam|sam2|promptnet] [--checkpoint PATH]

`engine` holds the images and runs the segmenter and the projection, `app` is the FastAPI
app (the JSON API and the static page in static/), `downloads` the exported files,
`__main__` the command. See docs/page.md.
"""
