// Creates the ACLs of the secured test broker (scripts/kafka-secure.sh), as its super-user.
// Run with Java's source launcher and the broker's jars: java -cp 'LIB/*' SecureSetup.java PROPS
// where PROPS is an admin client properties file. Idempotent: Kafka ignores an existing binding.
//
// Every principal gets the bindings a transactional txform pipeline needs, all PREFIXED with
// "sec-<principal>-": Read on the source topics and the group, Write on the sink and dead-letter
// topics, Write and Describe on the TransactionalId. A principal named "no-<binding>" lacks exactly
// that one binding, so the tests can show what each missing permission looks like.

import java.io.FileInputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecureSetup {
    static final String[] PRINCIPALS = {"app", "mtls-app", "no-txn", "no-group", "no-sink", "no-dlq"};

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (String principal : PRINCIPALS) {
            String prefix = "sec-" + principal + "-";
            String user = "User:" + principal;
            if (!principal.equals("no-group")) {
                bindings.add(allow(user, ResourceType.GROUP, prefix, AclOperation.READ));
            }
            bindings.add(allow(user, ResourceType.TOPIC, prefix + "in-", AclOperation.READ));
            if (!principal.equals("no-sink")) {
                bindings.add(allow(user, ResourceType.TOPIC, prefix + "out-", AclOperation.WRITE));
            }
            if (!principal.equals("no-dlq")) {
                bindings.add(allow(user, ResourceType.TOPIC, prefix + "dlq-", AclOperation.WRITE));
            }
            if (!principal.equals("no-txn")) {
                bindings.add(allow(user, ResourceType.TRANSACTIONAL_ID, prefix, AclOperation.WRITE));
            }
            bindings.add(allow(user, ResourceType.TRANSACTIONAL_ID, prefix, AclOperation.DESCRIBE));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("secure-setup: " + bindings.size() + " ACL bindings for " + PRINCIPALS.length + " principals");
    }

    static AclBinding allow(String user, ResourceType type, String prefix, AclOperation operation) {
        return new AclBinding(
                new ResourcePattern(type, prefix, PatternType.PREFIXED),
                new AccessControlEntry(user, "*", operation, AclPermissionType.ALLOW));
    }
}
