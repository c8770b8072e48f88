"""The application: settings, the pipeline of one video, manual corrections, batches and the report."""
