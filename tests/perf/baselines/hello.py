"""Hello world: the cost of Flask and gunicorn alone, nothing else."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, World!", 200, {"Content-Type": "text/plain"}
