"""Streamlit side of TailLab: router (app.py), cached handles, UI helpers and plotly charts."""
