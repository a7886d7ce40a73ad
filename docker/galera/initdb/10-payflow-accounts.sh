# PayFlow's database accounts. Sourced (not executed: the file is not executable) by the
# official mariadb image's entrypoint on galera1's first start, after it created the schema
# MARIADB_DATABASE and its owner MARIADB_USER (payflow_migrate, ALL on the schema) and
# before the server first listens on the network. galera2 and galera3 get the accounts with
# their first state transfer.
#
# The owner also gets GRANT OPTION on the schema, so that the migrate job can hand each
# service account its tables (`manage.py audit_grants --apply`) once the tables exist.
# The service accounts are created with their passwords (each from its own secret file) and
# no privilege at all:
#
#   payflow             web, worker, beat, relay, webhooks: DML, INSERT-only on the trail
#   payflow_archiver    the archiver worker: deletes only archived audit rows
#   payflow_sequencer   the audit sequencer: the only writer of the log
#
# In the image, `docker_process_sql` runs the SQL as root over the server's socket. The
# test (tests/deploy/test_galera_deploy.py) sources this same file with a stand-in that
# sends the SQL to a loopback Galera node.

payflow_sql_string() {
    # A single-quoted SQL string literal (backslash and quote escaped).
    local text=${1//\\/\\\\}
    printf "'%s'" "${text//\'/\\\'}"
}

payflow_create_accounts() {
    local database=${MARIADB_DATABASE:?MARIADB_DATABASE is not set}
    local owner=${MARIADB_USER:?MARIADB_USER is not set}
    local sql="GRANT ALL PRIVILEGES ON \`${database}\`.* TO '${owner}'@'%' WITH GRANT OPTION;"
    local pair account variable file password
    for pair in payflow:PAYFLOW_APP_DB_PASSWORD_FILE \
        payflow_archiver:PAYFLOW_ARCHIVER_DB_PASSWORD_FILE \
        payflow_sequencer:PAYFLOW_SEQUENCER_DB_PASSWORD_FILE; do
        account=${pair%%:*} variable=${pair#*:}
        file=${!variable:-}
        if [ -z "$file" ] || [ ! -r "$file" ]; then
            echo "payflow accounts: ${variable} must name a readable file with the password of ${account}" >&2
            return 1
        fi
        # The value without its final line breaks, LF or CRLF (as the app reads NAME_FILE).
        password=$(<"$file")
        password=${password%$'\r'}
        if [ -z "$password" ]; then
            echo "payflow accounts: ${file} (${variable}) is empty" >&2
            return 1
        fi
        sql+="CREATE USER IF NOT EXISTS '${account}'@'%' IDENTIFIED BY $(payflow_sql_string "$password");"
    done
    docker_process_sql --database=mysql <<<"$sql"
}

payflow_create_accounts
