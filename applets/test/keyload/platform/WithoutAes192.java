package keyload.platform;

import java.io.IOException;
import java.io.InputStream;
import javacard.framework.Applet;
import javacard.security.CryptoException;
import javacard.security.Key;
import javacard.security.KeyBuilder;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.Type;

/**
 * A card without AES-192, for the applets: loads the applet classes with every
 * {@code KeyBuilder.buildKey} call routed through {@link #buildKey}, which refuses 192-bit AES keys as such
 * a card's platform does (CryptoException.NO_SUCH_ALGORITHM). The applets carry no test code; this is the
 * test rewriting their class files, as the tearing harness does.
 */
public final class WithoutAes192 extends ClassLoader {

    private static final String APPLET_PACKAGE = "keyload.applet.";
    private static final String KEY_BUILDER = "javacard/security/KeyBuilder";

    public WithoutAes192() {
        super(WithoutAes192.class.getClassLoader());
    }

    /** What the rewritten applets call instead of {@link KeyBuilder#buildKey(byte, short, boolean)}. */
    public static Key buildKey(byte type, short bits, boolean encryption) {
        if (bits == KeyBuilder.LENGTH_AES_192) {
            CryptoException.throwIt(CryptoException.NO_SUCH_ALGORITHM);
        }
        return KeyBuilder.buildKey(type, bits, encryption);
    }

    public Class<? extends Applet> applet(String name) {
        try {
            return loadClass(name).asSubclass(Applet.class);
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException(name, e);
        }
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
        if (!name.startsWith(APPLET_PACKAGE)) {
            return super.loadClass(name, resolve);
        }
        synchronized (getClassLoadingLock(name)) {
            Class<?> loaded = findLoadedClass(name);
            if (loaded == null) {
                byte[] rewritten = rewrite(classBytes(name));
                loaded = defineClass(name, rewritten, 0, rewritten.length);
            }
            if (resolve) {
                resolveClass(loaded);
            }
            return loaded;
        }
    }

    private byte[] classBytes(String name) throws ClassNotFoundException {
        try (InputStream in = getParent().getResourceAsStream(name.replace('.', '/') + ".class")) {
            if (in == null) {
                throw new ClassNotFoundException(name);
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new ClassNotFoundException(name, e);
        }
    }

    private static byte[] rewrite(byte[] classFile) {
        ClassReader reader = new ClassReader(classFile);
        ClassWriter writer = new ClassWriter(reader, 0);
        String self = Type.getInternalName(WithoutAes192.class);
        reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String descriptor, String signature,
                    String[] exceptions) {
                return new MethodVisitor(Opcodes.ASM9, super.visitMethod(access, name, descriptor, signature,
                        exceptions)) {
                    @Override
                    public void visitMethodInsn(int opcode, String owner, String method, String desc, boolean itf) {
                        if (KEY_BUILDER.equals(owner) && "buildKey".equals(method) && "(BSZ)Ljavacard/security/Key;"
                                .equals(desc)) {
                            super.visitMethodInsn(opcode, self, method, desc, false);
                        } else {
                            super.visitMethodInsn(opcode, owner, method, desc, itf);
                        }
                    }
                };
            }
        }, 0);
        return writer.toByteArray();
    }
}
