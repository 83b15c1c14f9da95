"""A data scientist's job that reads dataset "census" and prints the mean age.

Inside a job on the data owner's machine (the app sets ``SYFT_IS_IN_JOB=true``,
``SYFTBOX_FOLDER`` and ``SYFTBOX_EMAIL``), the syft client's
``resolve_dataset_files_path`` gives the private files of a dataset the job declared;
a dataset it did not declare is not there. Submit it with syft-job, naming the client
it needs::

    client.submit_python_job("owner@datasite.org", "mean_age.py",
                             dependencies=["syft-client==0.1.117"])

and declare ``datasets: {owner@datasite.org: [census]}`` in its config.yaml.
"""

import syft_client as sc

(ages_csv,) = [path for path in sc.resolve_dataset_files_path("census") if path.name == "ages.csv"]
ages = [int(line) for line in ages_csv.read_text().split()[1:]]
print(f"mean age: {sum(ages) / len(ages):.1f} ({len(ages)} people)")
