package keyload.tools;

import java.util.Set;

import org.objectweb.asm.Type;

/**
 * Which types and members exist for the Java Card 3.0.5 converter without its int option.
 *
 * <p>jCardSim runs the applets on a full JVM, so a String or an int slips through every simulated test;
 * only the converter (on another machine, later) would notice. This class is the lint's single statement
 * of what that converter accepts.
 */
final class JavaCardTypes {

    /** The java.lang classes of the Java Card 3.0.5 API; everything else there is unknown to the converter. */
    private static final Set<String> JAVA_LANG = Set.of(
            "java/lang/Object", "java/lang/Throwable", "java/lang/Exception", "java/lang/RuntimeException",
            "java/lang/ArithmeticException", "java/lang/ArrayIndexOutOfBoundsException",
            "java/lang/ArrayStoreException", "java/lang/ClassCastException",
            "java/lang/IndexOutOfBoundsException", "java/lang/NegativeArraySizeException",
            "java/lang/NullPointerException", "java/lang/SecurityException");

    /** Packages of the API proper; the export files of the SDK cover exactly these. */
    private static final String[] API_PACKAGE_PREFIXES = {"javacard/", "javacardx/"};

    private static final String NO_ARG_CONSTRUCTOR = "<init>()V";
    private static final String OBJECT_EQUALS = "equals(Ljava/lang/Object;)Z";

    /** Packages (internal form) of the classes being linted: they may reference one another freely. */
    private final Set<String> ownPackages;

    JavaCardTypes(Set<String> ownPackages) {
        this.ownPackages = ownPackages;
    }

    static String packageOf(String internalName) {
        int slash = internalName.lastIndexOf('/');
        return slash < 0 ? "" : internalName.substring(0, slash);
    }

    /** True for classes of the linted package(s), whose declarations are checked where they are declared. */
    boolean isOwn(String internalName) {
        return ownPackages.contains(packageOf(internalName));
    }

    /** Why the converter would refuse {@code type}, or null if it accepts it. */
    String problem(Type type) {
        switch (type.getSort()) {
            case Type.VOID:
            case Type.BOOLEAN:
            case Type.BYTE:
            case Type.SHORT:
                return null;
            case Type.INT:
                return "int is not supported (the converter runs without its int option); use short or byte";
            case Type.CHAR:
            case Type.LONG:
            case Type.FLOAT:
            case Type.DOUBLE:
                return type.getClassName() + " is not a Java Card type";
            case Type.ARRAY:
                return type.getDimensions() > 1
                        ? "arrays of arrays (" + type.getClassName() + ") are not supported by Java Card"
                        : problem(type.getElementType());
            case Type.OBJECT:
                return isKnownClass(type.getInternalName()) ? null
                        : type.getClassName() + " is not in the Java Card 3.0.5 API nor in the linted package";
            default:
                return "method type constants are not supported by Java Card";
        }
    }

    /** Why a descriptor's parameter or return types are refused, or null. */
    String descriptorProblem(String methodDescriptor) {
        Type method = Type.getMethodType(methodDescriptor);
        for (Type argument : method.getArgumentTypes()) {
            String problem = problem(argument);
            if (problem != null) {
                return "parameter type: " + problem;
            }
        }
        String problem = problem(method.getReturnType());
        return problem == null ? null : "return type: " + problem;
    }

    /**
     * Why calling {@code owner.name desc} is refused, or null. The java.lang classes Java Card keeps are
     * skeletons: only the no-argument constructors and Object.equals exist, so e.g. Throwable.getMessage
     * or an array's clone() do not.
     */
    String memberProblem(String owner, String name, String desc) {
        boolean skeleton = JAVA_LANG.contains(owner) || owner.startsWith("[");
        String member = name + desc;
        if (!skeleton || member.equals(NO_ARG_CONSTRUCTOR) || member.equals(OBJECT_EQUALS)) {
            return null;
        }
        return Type.getObjectType(owner).getClassName() + "." + name
                + " does not exist in Java Card (its java.lang offers only no-argument constructors and Object.equals)";
    }

    private boolean isKnownClass(String internalName) {
        if (JAVA_LANG.contains(internalName) || isOwn(internalName)) {
            return true;
        }
        for (String prefix : API_PACKAGE_PREFIXES) {
            if (internalName.startsWith(prefix)) {
                return true;
            }
        }
        return false;
    }
}
