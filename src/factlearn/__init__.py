"""factlearn: teach a language model new facts by finetuning, and measure whether it learned
facts or only word co-occurrence.

Pipeline (one subpackage per stage): data -> train -> evaluate -> analyze -> report.
"""

__version__ = "0.1.0"
