"""The Streamlit app (``make app``)."""
