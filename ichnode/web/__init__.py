"""The worklist web app (Starlette, Jinja2 server-side templates) and its uvicorn thread."""
