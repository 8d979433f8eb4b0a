"""TailLab engine: the library under the dashboard and the CLI. Never imports streamlit."""
__version__ = "0.1.0"
