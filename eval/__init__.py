"""The measuring instrument: privacy and utility metrics of a de-identified output against its original.

Independent of the pipeline it measures: nothing here imports `ideud.stream`.
"""
