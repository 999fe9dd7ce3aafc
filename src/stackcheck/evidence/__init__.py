"""What the suite proves and how it reports it: the requirement catalogue, the SLA
thresholds, the recorder that judges each measurement, the reports and their history."""
