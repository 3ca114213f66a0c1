"""Result tables and their statistics: what a sweep writes (results.csv, summary.csv), and what
the report, the paper comparison and the figures read. Below every layer that uses them."""
