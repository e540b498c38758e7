"""Building what deploys: the Lambda artifact that template.yaml points at (never deployed itself)."""
