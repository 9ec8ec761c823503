"""The staged import pipeline: plain functions, one per stage (tasks only wire them)."""
